from glob import glob

from setuptools import find_packages, setup

package_name = 'wallie'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        # The workspace's top-level launch/ is installed by this bringup package.
        ('share/' + package_name + '/launch', glob('../../launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.toml')),
    ],
    package_data={package_name: ['config/*.yaml', 'config/*.toml', 'systemd/*']},
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='Wallie developers',
    maintainer_email='dev@wallie.invalid',
    description='Wallie bringup: launch, parameters, manager, metrics and the wallie CLI.',
    license='MIT',
    entry_points={
        'console_scripts': [
            'manager_node = wallie.manager_node:main',
            'metrics_node = wallie.metrics_node:main',
            'wallie = wallie.cli:main',
        ],
    },
)
