from setuptools import find_packages, setup

package_name = 'wallie_audio'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['data/wake/*.npz']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='Wallie developers',
    maintainer_email='dev@wallie.invalid',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='MIT',
    entry_points={
        'console_scripts': [
            'capture_node = wallie_audio.capture_node:main',
            'gate_node = wallie_audio.gate_node:main',
            'player_node = wallie_audio.player_node:main',
        ],
    },
)
