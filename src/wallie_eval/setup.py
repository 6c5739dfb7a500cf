from setuptools import find_packages, setup

package_name = 'wallie_eval'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    package_data={package_name: ['*.json']},
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='Wallie developers',
    maintainer_email='dev@wallie.invalid',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='MIT',
    entry_points={'console_scripts': []},
)
